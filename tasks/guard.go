package tasks

import (
	"fmt"

	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// Internal keys. No job may delete, expire or rewrite a key that belongs to
// cachekeeper (its key prefix, "cachekeeper:" by default, and the same
// inside a hash tag, "{cachekeeper:inbox}:dead") or to the asynq queue
// ("asynq:..."): cache:invalidate's keys, and the patterns of
// cache:invalidate_pattern, session:cleanup and ratelimit:prune are
// refused when they name one. Validate applies the rule for the default
// prefix; a Guard (and a Client built WithKeyPrefix) applies it for the
// workers' configured prefix too. The worker applies it again when the job
// runs, skipping (and counting) any internal key a scan meets.

// Guard refuses payloads that name internal keys under a given
// configuration. The zero Guard applies the default rule.
type Guard struct {
	rule keys.Rule
}

// NewGuard returns a guard for the workers' key_prefix ("" means
// "cachekeeper:") and the keys they own outside it (the inbox list when
// inbox.key does not start with the prefix).
func NewGuard(keyPrefix string, ownedKeys ...string) (*Guard, error) {
	if _, err := keys.New(keyPrefix); err != nil {
		return nil, fmt.Errorf("tasks: %w", err)
	}
	return &Guard{rule: keys.NewRule(keyPrefix, ownedKeys...)}, nil
}

// Check validates p and then refuses it when it names an internal key. The
// error wraps ErrInvalidPayload and names the field.
func (g *Guard) Check(p Payload) error {
	if p == nil {
		return fmt.Errorf("%w: nil payload", ErrInvalidPayload)
	}
	if err := p.Validate(); err != nil {
		return err
	}
	return g.checkKeys(p)
}

func (g *Guard) checkKeys(p Payload) error {
	k, ok := p.(keyed)
	if !ok {
		return nil
	}
	rule := keys.DefaultRule()
	if g != nil {
		rule = g.rule
	}
	return k.checkKeys(rule)
}

// keyed is implemented by the payloads that name keys or patterns.
type keyed interface {
	checkKeys(r keys.Rule) error
}

func checkPatternField(kind, field, pattern string, r keys.Rule) error {
	if pattern == "" {
		return nil
	}
	if err := r.CheckPattern(pattern); err != nil {
		return fieldErr(kind, field, "%v", err)
	}
	return nil
}

func (a InvalidateArgs) checkKeys(r keys.Rule) error {
	for i, k := range a.Keys {
		if err := r.CheckKey(k); err != nil {
			return fieldErr(KindInvalidate, fmt.Sprintf("keys[%d]", i), "%v", err)
		}
	}
	return nil
}

func (a InvalidatePatternArgs) checkKeys(r keys.Rule) error {
	return checkPatternField(KindInvalidatePattern, "pattern", a.Pattern, r)
}

func (a SessionCleanupArgs) checkKeys(r keys.Rule) error {
	return checkPatternField(KindSessionCleanup, "pattern", a.Pattern, r)
}

func (a RateLimitPruneArgs) checkKeys(r keys.Rule) error {
	return checkPatternField(KindRateLimitPrune, "pattern", a.Pattern, r)
}
