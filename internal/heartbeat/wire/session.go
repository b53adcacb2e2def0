package wire

// SessionPath is the HTTPS endpoint of every detector replica where an
// agent opens a session: POST with the agent's pod-bound ServiceAccount
// token as "Authorization: Bearer" and a SessionRequest body.
const SessionPath = "/v1/sessions"

// SessionRequest is the body of a session request.
type SessionRequest struct {
	// Node the agent claims to run on; it must equal the token's
	// node-name claim.
	Node string `json:"node"`
}

// SessionResponse is the answer to an authenticated SessionRequest.
type SessionResponse struct {
	// ID and Key of the session (base64 in JSON).
	ID  []byte `json:"id"`
	Key []byte `json:"key"`
	// TTLSeconds: the session ends this long after it was issued.
	TTLSeconds float64 `json:"ttlSeconds"`
	// UDPPort is this replica's heartbeat port, on the address the agent
	// reached over HTTPS.
	UDPPort int `json:"udpPort"`
}
