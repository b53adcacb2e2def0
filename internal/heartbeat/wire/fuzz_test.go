package wire

import (
	"bytes"
	"testing"
)

// FuzzPeek feeds arbitrary datagrams to the decoder: it never panics, a
// datagram it accepts has the length of its kind, and re-encoding an
// accepted heartbeat or ack reproduces its header bytes exactly.
func FuzzPeek(f *testing.F) {
	m := NewMAC(testKey(1))
	f.Add(m.Append(nil, testDatagram()))
	ack := testDatagram()
	ack.Kind = KindAck
	f.Add(m.Append(nil, ack))
	f.Add(AppendRehandshake(nil, ack.Session))
	f.Add([]byte{})
	f.Add([]byte{Version})
	f.Fuzz(func(t *testing.T, p []byte) {
		d, err := Peek(p)
		if err != nil {
			if Reason(err) == DropNone {
				t.Fatalf("error %v without a reason", err)
			}
			return
		}
		switch d.Kind {
		case KindRehandshake:
			if len(p) != RehandshakeSize {
				t.Fatalf("accepted a %d-byte notice", len(p))
			}
			if !bytes.Equal(AppendRehandshake(nil, d.Session), p) {
				t.Fatal("notice does not re-encode to itself")
			}
		case KindHeartbeat, KindAck:
			if len(p) != Size {
				t.Fatalf("accepted a %d-byte %v", len(p), d.Kind)
			}
			if q := m.Append(nil, d); !bytes.Equal(q[:macOffset], p[:macOffset]) {
				t.Fatal("header does not re-encode to itself")
			}
			_ = m.Verify(p)
		default:
			t.Fatalf("accepted kind %d", d.Kind)
		}
	})
}
