pub struct Counter;

#[pulsing::remote(foo)]
impl Counter {
    pub fn get(&self) -> i64 {
        0
    }
}

fn main() {}
