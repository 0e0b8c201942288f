"""AiiDA WorkChains of the plugin; they orchestrate, analysis/ computes."""
