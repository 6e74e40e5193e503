package tasks

import "strings"

// NotifyArgs publishes Message on a pub/sub Channel. Use the ProcessAt or
// ProcessIn option to deliver it later.
type NotifyArgs struct {
	Channel string `json:"channel"`
	Message string `json:"message"`
}

// Kind implements Payload.
func (NotifyArgs) Kind() string { return KindNotifyPublish }

// Validate implements Payload.
func (a NotifyArgs) Validate() error {
	if strings.TrimSpace(a.Channel) == "" {
		return fieldErr(KindNotifyPublish, "channel", "must not be empty")
	}
	return nil
}
