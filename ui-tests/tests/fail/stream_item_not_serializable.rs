use pulsing::prelude::*;

pub struct Point {
    pub x: i32,
    pub y: i32,
}

pub struct Plotter;

#[pulsing::remote]
impl Plotter {
    pub fn points(&self, n: i32) -> impl Stream<Item = Point> + Send + 'static {
        futures_util::stream::iter((0..n).map(|x| Point { x, y: 0 }))
    }
}

fn main() {}
