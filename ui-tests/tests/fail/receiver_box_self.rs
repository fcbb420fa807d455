pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    pub fn take(self: Box<Self>) -> i64 {
        self.value
    }
}

fn main() {}
