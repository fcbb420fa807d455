pub struct Point {
    pub x: i32,
    pub y: i32,
}

pub struct Plotter;

#[pulsing::remote]
impl Plotter {
    pub fn plot(&self, point: Point) -> i32 {
        point.x + point.y
    }
}

fn main() {}
