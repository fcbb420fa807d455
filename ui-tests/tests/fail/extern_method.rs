pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    pub extern "C" fn get(&self) -> i64 {
        self.value
    }
}

fn main() {}
