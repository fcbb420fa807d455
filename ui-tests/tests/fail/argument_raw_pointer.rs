pub struct Reader;

#[pulsing::remote]
impl Reader {
    pub fn read(&self, at: *const u8) -> usize {
        at as usize
    }
}

fn main() {}
