pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    pub fn get(&self) -> i64 {
        self.value
    }

    #[on_start]
    fn reset(&mut self) {
        self.value = 0;
    }

    #[on_start]
    fn greet(&mut self) {
        println!("started");
    }
}

fn main() {}
