package devmode

import (
	"context"
	"fmt"
	"time"
)

// demoNotify schedules a message a second ahead and shows it arriving.
func demoNotify(ctx context.Context, env Env) error {
	const channel = "demo:notifications"
	sub := env.Redis.Subscribe(ctx, channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return err
	}
	msg := fmt.Sprintf("hello at %s", time.Now().Format(time.TimeOnly))
	info, err := env.Client.Publish(ctx, channel, msg)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Out, "[notify] enqueued %s %s: publish %q on %s\n", info.Type, info.ID, msg, channel)
	select {
	case m := <-sub.Channel():
		fmt.Fprintf(env.Out, "[notify] subscriber received %q\n", m.Payload)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("message not delivered: %w", ctx.Err())
	}
}
