pub struct Worker;

#[pulsing::remote]
impl Worker {
    pub fn work(&self) -> u32 {
        self.resolve()
    }

    fn resolve(&self) -> u32 {
        1
    }
}

fn main() {}
