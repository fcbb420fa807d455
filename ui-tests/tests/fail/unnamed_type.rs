pub trait Greet {}

#[pulsing::remote]
impl dyn Greet {
    pub fn greet(&self) -> String {
        "hello".to_string()
    }
}

fn main() {}
