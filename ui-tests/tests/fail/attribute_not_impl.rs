#[pulsing::remote]
pub struct Counter {
    value: i64,
}

fn main() {}
