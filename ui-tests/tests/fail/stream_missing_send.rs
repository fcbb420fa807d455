use pulsing::prelude::*;

pub struct Numbers;

#[pulsing::remote]
impl Numbers {
    pub fn count_to(&self, n: u32) -> impl Stream<Item = u32> + 'static {
        futures_util::stream::iter(1..=n)
    }
}

fn main() {}
