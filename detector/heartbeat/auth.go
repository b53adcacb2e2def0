package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// NodeNameClaim is the user extra the API server sets from a
// ServiceAccount token bound to a pod: the name of the pod's node.
const NodeNameClaim = "authentication.kubernetes.io/node-name"

// DefaultAgentUser is the username of roam-agent's ServiceAccount as the
// manifests install it.
const DefaultAgentUser = "system:serviceaccount:roam-agent:roam-agent"

// ErrUnauthenticated: the credential does not prove the node (as opposed
// to the API server failing to answer).
var ErrUnauthenticated = errors.New("not authenticated")

// Authenticator tells which robot a bearer token proves.
type Authenticator interface {
	// Authenticate returns the node the token is bound to. Errors wrapping
	// ErrUnauthenticated reject the token; others mean the answer is not
	// known (say, the API server is unreachable).
	Authenticate(ctx context.Context, token string) (node string, err error)
}

// TokenReviewer authenticates agents with the API server's TokenReview:
// the token must be valid (not expired, its pod still exists), belong to
// one of Users, and carry exactly one node-name claim — which the API
// server only sets for tokens bound to a pod scheduled on that node.
type TokenReviewer struct {
	Reviews authenticationv1client.TokenReviewInterface
	// Users are the accepted usernames (default: DefaultAgentUser).
	Users []string
	// Audiences the token must be issued for (nil: the API server's own).
	Audiences []string
}

// Authenticate implements Authenticator.
func (r *TokenReviewer) Authenticate(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	tr, err := r.Reviews.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: r.Audiences}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token review: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "the API server does not accept the token"
		}
		return "", fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	}
	users := r.Users
	if len(users) == 0 {
		users = []string{DefaultAgentUser}
	}
	if !slices.Contains(users, st.User.Username) {
		return "", fmt.Errorf("%w: user %q is not an agent (accepted: %v)", ErrUnauthenticated, st.User.Username, users)
	}
	nodes := st.User.Extra[NodeNameClaim]
	if len(nodes) != 1 || nodes[0] == "" {
		return "", fmt.Errorf("%w: token of %q carries %d %s claims, want exactly one (a token bound to the agent's pod)",
			ErrUnauthenticated, st.User.Username, len(nodes), NodeNameClaim)
	}
	return nodes[0], nil
}
