mod loom_chan;
