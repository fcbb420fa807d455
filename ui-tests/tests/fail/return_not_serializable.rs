pub struct Point {
    pub x: i32,
    pub y: i32,
}

pub struct Plotter;

#[pulsing::remote]
impl Plotter {
    pub fn origin(&self) -> Point {
        Point { x: 0, y: 0 }
    }
}

fn main() {}
