// One `#[remote]` block per type: the macro writes one message enum, proxy and interface from
// it, and cannot merge two.
pub struct Split;

#[pulsing::remote]
impl Split {
    pub fn first(&self) {}
}

#[pulsing::remote]
impl Split {
    pub fn second(&self) {}
}

fn main() {}
