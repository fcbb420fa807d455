pub struct Counter {
    value: i64,
}

#[pulsing::remote]
impl Counter {
    pub fn get(&self) -> i64 {
        self.value
    }

    #[on_stop]
    async fn stopping(&mut self, reason: String) {
        println!("stopping at {}: {reason}", self.value);
    }
}

fn main() {}
