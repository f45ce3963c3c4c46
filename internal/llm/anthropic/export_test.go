package anthropic

// NewSDKDeltas is New with the SDK decoding text deltas too (no
// textDeltas): the reference the fast path is compared with.
func NewSDKDeltas(cfg Config) *Client {
	c := New(cfg)
	c.sdkDeltas = true
	return c
}
