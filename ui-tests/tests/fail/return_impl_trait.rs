pub struct Numbers;

#[pulsing::remote]
impl Numbers {
    pub fn count_to(&self, n: u32) -> impl Iterator<Item = u32> + Send + 'static {
        1..=n
    }
}

fn main() {}
