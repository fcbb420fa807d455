pub struct Worker;

#[pulsing::remote]
impl Worker {
    pub fn spawn(&self, jobs: u32) -> u32 {
        jobs
    }
}

fn main() {}
