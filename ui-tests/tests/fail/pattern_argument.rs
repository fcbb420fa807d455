pub struct Adder;

#[pulsing::remote]
impl Adder {
    pub fn add(&self, (a, b): (i32, i32)) -> i32 {
        a + b
    }
}

fn main() {}
