pub struct Store<T> {
    items: Vec<T>,
}

#[pulsing::remote]
impl<T: Clone> Store<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

fn main() {}
