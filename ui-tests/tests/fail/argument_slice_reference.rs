pub struct Summer;

#[pulsing::remote]
impl Summer {
    pub fn sum(&self, bytes: &[u8]) -> u64 {
        bytes.iter().map(|&b| u64::from(b)).sum()
    }
}

fn main() {}
