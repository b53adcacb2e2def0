package heartbeat

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// certValidity of a self-signed session certificate. Agents pin it (it is
// its own CA), so it is replaced only by deleting the Secret and
// redistributing it.
const certValidity = 10 * 365 * 24 * time.Hour

// SelfSigned returns a PEM certificate and key for the session endpoint,
// valid for dnsNames (and nothing else), self-signed so that it is its own
// trust anchor. now is the certificate's notBefore (wall clock: X.509
// validity is wall-clock time).
func SelfSigned(dnsNames []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "roam-detector heartbeat sessions"},
		DNSNames:              dnsNames,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signing: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// EnsureCertificate returns the session endpoint's certificate from the
// kubernetes.io/tls Secret name, creating it self-signed for dnsNames on
// the first start, so every replica serves the same certificate and agents
// trust one anchor (its tls.crt, distributed to them as their CA file).
func EnsureCertificate(ctx context.Context, secrets typedcorev1.SecretInterface, name string, dnsNames []string, now time.Time) (tls.Certificate, []byte, error) {
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		certPEM, keyPEM, gerr := SelfSigned(dnsNames, now)
		if gerr != nil {
			return tls.Certificate{}, nil, gerr
		}
		s, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) { // another replica was first
			s, err = secrets.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("heartbeat TLS Secret %s: %w", name, err)
	}
	cert, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("heartbeat TLS Secret %s: %w", name, err)
	}
	return cert, s.Data[corev1.TLSCertKey], nil
}
