use pulsing::prelude::*;

pub struct Numbers {
    items: Vec<u32>,
}

#[pulsing::remote]
impl Numbers {
    pub fn all(&self) -> impl Stream<Item = u32> + Send + '_ {
        futures_util::stream::iter(self.items.iter().copied())
    }
}

fn main() {}
