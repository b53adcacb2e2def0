// Package wire is the datagram format of roam's direct heartbeats: the
// robot's roam-agent sends a Heartbeat to every roam-detector replica, the
// leader answers with an Ack, and a replica that does not know the session
// answers with a Rehandshake notice.
//
// Every authenticated datagram has one fixed layout (big-endian):
//
//	offset size field
//	0      1    version (Version)
//	1      1    kind (KindHeartbeat or KindAck)
//	2      16   session id (chosen by the detector at the handshake)
//	18     8    sequence number (per session, strictly increasing)
//	26     8    agent time: the agent's monotonic send time in nanoseconds,
//	            opaque to the detector, echoed in the Ack
//	34     16   MAC: HMAC-SHA256 over bytes 0..33 with the session key,
//	            truncated to 128 bits
//
// The kind is under the MAC, so a heartbeat cannot be reflected back to the
// agent as an acknowledgement. The agent time is never used for a decision
// by the detector (robot clocks are not trusted); the agent uses the echo to
// learn which of its own send times the leader acknowledged.
//
// A Rehandshake notice is unauthenticated (no key is shared for an unknown
// session): version, KindRehandshake and the session id, 18 bytes. It is
// smaller than the datagram that provokes it, so it cannot amplify a flood.
//
// The package is pure: no sockets, no clocks.
package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
)

// Version is the only datagram version this package speaks.
const Version = 1

// Kind is the type of a datagram.
type Kind uint8

const (
	// KindHeartbeat: agent → every detector replica.
	KindHeartbeat Kind = 1
	// KindAck: the leading detector → agent, one per accepted heartbeat.
	KindAck Kind = 2
	// KindRehandshake: detector → agent, for a datagram whose session the
	// detector does not know (it restarted, or the session expired).
	KindRehandshake Kind = 3
)

// Sizes of the datagrams and their parts.
const (
	SessionIDSize = 16
	// KeySize is the length of a session key (the HMAC-SHA256 block-size
	// recommendation is at least the hash size, 32 bytes).
	KeySize = 32
	// MACSize is the truncated HMAC-SHA256 length (128 bits, as RFC 4868
	// truncates HMAC-SHA256 for IPsec).
	MACSize = 16
	// Size is the length of a heartbeat or an ack.
	Size = 2 + SessionIDSize + 8 + 8 + MACSize
	// RehandshakeSize is the length of a rehandshake notice.
	RehandshakeSize = 2 + SessionIDSize
	// MaxDatagram is the largest datagram a receiver reads; anything longer
	// is dropped as oversize (a receiver reads into a buffer one byte
	// longer so it can tell).
	MaxDatagram = Size
	macOffset   = Size - MACSize
)

// SessionID names a session; it is chosen at random by the detector.
type SessionID [SessionIDSize]byte

// Key is a session's MAC key.
type Key [KeySize]byte

// Datagram is a decoded heartbeat or ack.
type Datagram struct {
	Kind    Kind
	Session SessionID
	// Seq is the sequence number; the agent starts every session at 1.
	Seq uint64
	// AgentTime is the agent's monotonic send time (nanoseconds from an
	// origin of the agent's choosing), echoed by the Ack.
	AgentTime int64
}

// DropReason says why a datagram was dropped; its String is the
// roam_heartbeat_datagrams_dropped_total{reason} label.
type DropReason uint8

// Drop reasons, in the order a receiver checks them.
const (
	// DropNone: accepted.
	DropNone DropReason = iota
	// DropOversize: longer than MaxDatagram.
	DropOversize
	// DropMalformed: too short, or an unknown kind.
	DropMalformed
	// DropVersion: a version this receiver does not speak.
	DropVersion
	// DropUnknownSession: no live session has this id (never issued,
	// expired, or issued by a previous process).
	DropUnknownSession
	// DropBadMAC: the MAC does not verify under the session's key (forged
	// or corrupted).
	DropBadMAC
	// DropReplay: the sequence number is not newer than the last accepted
	// one of the session (a replay, or a reordered late datagram).
	DropReplay
	// DropWrongKind: a valid datagram of a kind the receiver does not take
	// (an ack sent to a detector, a heartbeat sent to an agent).
	DropWrongKind
	numDropReasons
)

// DropReasons lists every reason a datagram is dropped (for pre-creating
// metric series).
func DropReasons() []DropReason {
	rs := make([]DropReason, 0, numDropReasons-1)
	for r := DropOversize; r < numDropReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

func (r DropReason) String() string {
	switch r {
	case DropNone:
		return "none"
	case DropOversize:
		return "oversize"
	case DropMalformed:
		return "malformed"
	case DropVersion:
		return "version"
	case DropUnknownSession:
		return "unknown_session"
	case DropBadMAC:
		return "bad_mac"
	case DropReplay:
		return "replay"
	case DropWrongKind:
		return "wrong_kind"
	}
	return fmt.Sprintf("DropReason(%d)", int(r))
}

// Error is the error of a dropped datagram.
type Error struct{ Reason DropReason }

func (e *Error) Error() string { return "heartbeat datagram dropped: " + e.Reason.String() }

func drop(r DropReason) error { return &Error{Reason: r} }

// Reason returns the drop reason of an error from this package (DropNone
// for nil, DropMalformed for any other error).
func Reason(err error) DropReason {
	if err == nil {
		return DropNone
	}
	if e, ok := err.(*Error); ok {
		return e.Reason
	}
	return DropMalformed
}

// MAC computes datagram MACs under one session key. It reuses its HMAC
// state, so it is not safe for concurrent use; each session owns one.
type MAC struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// NewMAC returns a MAC for key.
func NewMAC(key Key) *MAC { return &MAC{h: hmac.New(sha256.New, key[:])} }

func (m *MAC) compute(body []byte) []byte {
	m.h.Reset()
	m.h.Write(body)
	return m.h.Sum(m.sum[:0])[:MACSize]
}

// Append appends d, MACed with m, to buf and returns the extended slice.
// d.Kind must be KindHeartbeat or KindAck.
func (m *MAC) Append(buf []byte, d Datagram) []byte {
	start := len(buf)
	buf = append(buf, Version, byte(d.Kind))
	buf = append(buf, d.Session[:]...)
	buf = binary.BigEndian.AppendUint64(buf, d.Seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(d.AgentTime))
	return append(buf, m.compute(buf[start:])...)
}

// Verify reports whether p's MAC (p as returned by Peek without error) is
// valid under m, in constant time.
func (m *MAC) Verify(p []byte) bool {
	return subtle.ConstantTimeCompare(m.compute(p[:macOffset]), p[macOffset:Size]) == 1
}

// Peek decodes p's unauthenticated header: everything a receiver needs to
// find the session's key. The caller then checks the MAC with Verify
// before trusting any field. A Rehandshake notice decodes with only Kind
// and Session set.
func Peek(p []byte) (Datagram, error) {
	var d Datagram
	switch {
	case len(p) > MaxDatagram:
		return d, drop(DropOversize)
	case len(p) < RehandshakeSize:
		return d, drop(DropMalformed)
	case p[0] != Version:
		return d, drop(DropVersion)
	}
	d.Kind = Kind(p[1])
	copy(d.Session[:], p[2:2+SessionIDSize])
	switch d.Kind {
	case KindRehandshake:
		if len(p) != RehandshakeSize {
			return Datagram{}, drop(DropMalformed)
		}
		return d, nil
	case KindHeartbeat, KindAck:
		if len(p) != Size {
			return Datagram{}, drop(DropMalformed)
		}
	default:
		return Datagram{}, drop(DropMalformed)
	}
	d.Seq = binary.BigEndian.Uint64(p[18:26])
	d.AgentTime = int64(binary.BigEndian.Uint64(p[26:34]))
	return d, nil
}

// AppendRehandshake appends a rehandshake notice for session to buf.
func AppendRehandshake(buf []byte, session SessionID) []byte {
	buf = append(buf, Version, byte(KindRehandshake))
	return append(buf, session[:]...)
}

// Window accepts each session's sequence numbers only when strictly newer
// than the last accepted one: a recorded datagram replayed later is
// dropped, and so is one overtaken by a newer one (for a heartbeat a late
// copy carries no information). The zero Window accepts any sequence ≥ 1.
type Window struct{ last uint64 }

// Accept records seq and reports whether it is newer than every sequence
// accepted before. Call it only after the MAC verified, so a forger cannot
// advance the window.
func (w *Window) Accept(seq uint64) bool {
	if seq <= w.last {
		return false
	}
	w.last = seq
	return true
}

// Last is the newest accepted sequence (0: none).
func (w *Window) Last() uint64 { return w.last }
