package httptool

// WithCheckAddr replaces the dial-time SSRF check of cfg (tests).
func WithCheckAddr(cfg Config, check func(network, address string) error) Config {
	cfg.checkAddr = check
	return cfg
}

// CheckAddr is the default dial-time check.
var CheckAddr = checkAddr
