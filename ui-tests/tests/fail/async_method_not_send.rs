use std::rc::Rc;

pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    pub async fn get(&mut self) -> i64 {
        let shared = Rc::new(self.value);
        tokio::task::yield_now().await;
        *shared
    }
}

fn main() {}
