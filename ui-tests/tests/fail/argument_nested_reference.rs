pub struct Joiner;

#[pulsing::remote]
impl Joiner {
    pub fn join(&self, parts: Vec<&str>) -> String {
        parts.concat()
    }
}

fn main() {}
