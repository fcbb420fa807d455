pub struct Store<T> {
    items: Vec<T>,
}

#[pulsing::remote]
impl Store<u32> {
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

fn main() {}
