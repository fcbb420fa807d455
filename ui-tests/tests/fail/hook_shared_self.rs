pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    pub fn get(&self) -> i64 {
        self.value
    }

    #[on_start]
    fn started(&self) {
        println!("started at {}", self.value);
    }
}

fn main() {}
