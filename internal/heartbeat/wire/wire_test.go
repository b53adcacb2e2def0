package wire

import (
	"bytes"
	"errors"
	"testing"
)

func testKey(b byte) Key {
	var k Key
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func testDatagram() Datagram {
	d := Datagram{Kind: KindHeartbeat, Seq: 42, AgentTime: 1234567890}
	copy(d.Session[:], "0123456789abcdef")
	return d
}

func TestRoundTrip(t *testing.T) {
	m := NewMAC(testKey(1))
	for _, kind := range []Kind{KindHeartbeat, KindAck} {
		d := testDatagram()
		d.Kind = kind
		p := m.Append(nil, d)
		if len(p) != Size {
			t.Fatalf("encoded %d bytes, want %d", len(p), Size)
		}
		got, err := Peek(p)
		if err != nil {
			t.Fatalf("Peek(%v): %v", kind, err)
		}
		if got != d {
			t.Errorf("decoded %+v, want %+v", got, d)
		}
		if !m.Verify(p) {
			t.Errorf("the MAC of a fresh %v does not verify", kind)
		}
	}
}

// Every single-bit change of a datagram is caught: the header bits by the
// MAC (or by Peek), the MAC bits by the comparison.
func TestEveryBitFlipIsRejected(t *testing.T) {
	m := NewMAC(testKey(1))
	p := m.Append(nil, testDatagram())
	for i := range len(p) * 8 {
		q := bytes.Clone(p)
		q[i/8] ^= 1 << (i % 8)
		if _, err := Peek(q); err == nil && m.Verify(q) {
			t.Errorf("flipping bit %d still verifies", i)
		}
	}
}

func TestWrongKeyAndReflection(t *testing.T) {
	d := testDatagram()
	p := NewMAC(testKey(1)).Append(nil, d)
	if NewMAC(testKey(2)).Verify(p) {
		t.Error("a datagram verifies under another session's key")
	}
	// A heartbeat reflected as an ack: change the kind; the MAC covers it.
	q := bytes.Clone(p)
	q[1] = byte(KindAck)
	if _, err := Peek(q); err != nil {
		t.Fatal(err)
	}
	if NewMAC(testKey(1)).Verify(q) {
		t.Error("a heartbeat with its kind changed to ack still verifies")
	}
}

func TestPeekRejects(t *testing.T) {
	m := NewMAC(testKey(1))
	good := m.Append(nil, testDatagram())
	cases := []struct {
		name string
		p    []byte
		want DropReason
	}{
		{"empty", nil, DropMalformed},
		{"short", good[:RehandshakeSize-1], DropMalformed},
		{"truncated", good[:Size-1], DropMalformed},
		{"oversize", append(bytes.Clone(good), 0), DropOversize},
		{"huge", make([]byte, 65507), DropOversize},
		{"version", append([]byte{2}, good[1:]...), DropVersion},
		{"unknown kind", append([]byte{Version, 9}, good[2:]...), DropMalformed},
		{"long rehandshake", append([]byte{Version, byte(KindRehandshake)}, good[2:]...), DropMalformed},
	}
	for _, c := range cases {
		_, err := Peek(c.p)
		if got := Reason(err); got != c.want {
			t.Errorf("%s: reason %v (err %v), want %v", c.name, got, err, c.want)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: error %v is not a *wire.Error", c.name, err)
		}
	}
}

func TestRehandshake(t *testing.T) {
	d := testDatagram()
	p := AppendRehandshake(nil, d.Session)
	if len(p) != RehandshakeSize || RehandshakeSize >= Size {
		t.Fatalf("notice of %d bytes; want %d, smaller than a heartbeat (%d)", len(p), RehandshakeSize, Size)
	}
	got, err := Peek(p)
	if err != nil || got.Kind != KindRehandshake || got.Session != d.Session {
		t.Errorf("Peek(notice) = %+v, %v", got, err)
	}
}

func TestWindow(t *testing.T) {
	var w Window
	steps := []struct {
		seq  uint64
		want bool
	}{{0, false}, {1, true}, {1, false}, {3, true}, {2, false}, {3, false}, {4, true}, {1 << 63, true}, {4, false}}
	for _, s := range steps {
		if got := w.Accept(s.seq); got != s.want {
			t.Errorf("Accept(%d) = %v after last %d, want %v", s.seq, got, w.Last(), s.want)
		}
	}
}

func TestDropReasonsAreDistinctLabels(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range DropReasons() {
		s := r.String()
		if seen[s] || s == "none" {
			t.Errorf("label %q repeated or reserved", s)
		}
		seen[s] = true
	}
	if len(seen) != int(numDropReasons)-1 {
		t.Errorf("%d labels for %d reasons", len(seen), numDropReasons-1)
	}
}

func BenchmarkVerify(b *testing.B) {
	m := NewMAC(testKey(1))
	p := m.Append(nil, testDatagram())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Peek(p); err != nil || !m.Verify(p) {
			b.Fatal("rejected")
		}
	}
}
