pub struct Store;

#[pulsing::remote]
impl Store {
    pub fn put<T: serde::Serialize>(&self, value: T) -> bool {
        let _ = value;
        true
    }
}

fn main() {}
