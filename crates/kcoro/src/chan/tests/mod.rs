mod loom_chan;
mod loom_ring;
