package store

import (
	"context"
	"log/slog"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog forwards the embedded etcd's log to the control plane's
// logger: its errors as errors, its warnings (mostly about settings that do
// not apply to a single embedded member) at debug level. While the store is
// closing, everything is dropped: etcd reports its own listeners shutting
// down as errors.
type zapToSlog struct {
	log     *slog.Logger
	closing *atomic.Bool
	attrs   []slog.Attr
}

func newEtcdLogger(log *slog.Logger, closing *atomic.Bool) *zap.Logger {
	return zap.New(&zapToSlog{log: log.With("component", "etcd"), closing: closing})
}

func (z *zapToSlog) Enabled(l zapcore.Level) bool { return l >= zapcore.WarnLevel }

func (z *zapToSlog) With(fields []zapcore.Field) zapcore.Core {
	return &zapToSlog{log: z.log, closing: z.closing, attrs: append(append([]slog.Attr(nil), z.attrs...), attrs(fields)...)}
}

func (z *zapToSlog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if z.Enabled(e.Level) {
		return ce.AddCore(e, z)
	}
	return ce
}

func (z *zapToSlog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if z.closing.Load() {
		return nil
	}
	level := slog.LevelDebug
	if e.Level >= zapcore.ErrorLevel {
		level = slog.LevelError
	}
	z.log.LogAttrs(context.Background(), level, e.Message, append(append([]slog.Attr(nil), z.attrs...), attrs(fields)...)...)
	return nil
}

func (z *zapToSlog) Sync() error { return nil }

func attrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, slog.Any(k, v))
	}
	return out
}
