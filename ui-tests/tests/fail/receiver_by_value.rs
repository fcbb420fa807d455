pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    pub fn take(self) -> i64 {
        self.value
    }
}

fn main() {}
