pub struct Worker;

#[pulsing::remote]
impl Worker {
    pub fn clone(&self) -> u32 {
        1
    }
}

fn main() {}
