pub struct Greeter;

#[pulsing::remote]
impl Greeter {
    pub fn greet(&self, name: impl Into<String>) -> String {
        format!("hello {}", name.into())
    }
}

fn main() {}
