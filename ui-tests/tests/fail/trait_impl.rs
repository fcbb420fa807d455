pub trait Greet {
    fn greet(&self) -> String;
}

pub struct Greeter;

#[pulsing::remote]
impl Greet for Greeter {
    fn greet(&self) -> String {
        "hello".to_string()
    }
}

fn main() {}
