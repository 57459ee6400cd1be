package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix starts every environment override: CLEAVE_SOURCE_DSN overrides source.dsn.
const EnvPrefix = "CLEAVE"

// Load reads the YAML file at path (empty: defaults and environment only), applies
// environment overrides, rejects unknown keys, and validates the result.
func Load(path string) (*Config, error) {
	return LoadWith(path, nil)
}

// LoadWith is Load with extra overrides (for example from command-line flags) keyed by
// configuration path; they win over the file and the environment.
func LoadWith(path string, overrides map[string]any) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	for k, val := range defaults {
		v.SetDefault(k, val)
	}
	// Lists have no scalar key for viper to bind, so they are registered explicitly.
	v.SetDefault("kafka.brokers", []string{})
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		defer f.Close()
		if err := v.ReadConfig(f); err != nil {
			return nil, fmt.Errorf("read config %s: %w", path, err)
		}
		if err := checkUnknownKeys(v.AllSettings(), reflect.TypeOf(Config{}), ""); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	for k, val := range overrides {
		v.Set(k, val)
	}

	var c Config
	if err := v.Unmarshal(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	))); err != nil {
		return nil, fmt.Errorf("config %s: %w", displayPath(path), err)
	}
	applyShardEnv(&c)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", displayPath(path), err)
	}
	return &c, nil
}

func displayPath(path string) string {
	if path == "" {
		return "(environment)"
	}
	return path
}

// applyShardEnv lets each shard's DSN come from CLEAVE_SHARD_<NAME>_DSN, so that secrets need
// not be written in the file.
func applyShardEnv(c *Config) {
	for i := range c.Shards {
		if dsn, ok := os.LookupEnv(ShardDSNEnv(c.Shards[i].Name)); ok {
			c.Shards[i].DSN = dsn
		}
	}
}

// ShardDSNEnv is the environment variable that overrides the DSN of the named shard.
func ShardDSNEnv(name string) string {
	up := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
	return EnvPrefix + "_SHARD_" + up + "_DSN"
}

// checkUnknownKeys walks the settings read from the file against the struct tree and names
// the first key (in sorted order, so the message is stable) that no field accepts.
func checkUnknownKeys(settings map[string]any, t reflect.Type, prefix string) error {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get("mapstructure"); tag != "" {
			fields[tag] = f.Type
		}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		ft, ok := fields[k]
		if !ok {
			return fmt.Errorf("%s: unknown key%s", path, suggest(k, fields))
		}
		if err := checkValue(settings[k], ft, path); err != nil {
			return err
		}
	}
	return nil
}

func checkValue(val any, ft reflect.Type, path string) error {
	switch ft.Kind() {
	case reflect.Struct:
		if m, ok := val.(map[string]any); ok {
			return checkUnknownKeys(m, ft, path)
		}
	case reflect.Slice:
		if ft.Elem().Kind() != reflect.Struct {
			return nil
		}
		items, ok := val.([]any)
		if !ok {
			return nil
		}
		for i, item := range items {
			m, ok := item.(map[string]any)
			if !ok {
				return fmt.Errorf("%s[%d]: expected a mapping of keys, got %T", path, i, item)
			}
			// viper lower-cases nested keys only at the top level; list items keep their case.
			lower := make(map[string]any, len(m))
			for k, v := range m {
				lower[strings.ToLower(k)] = v
			}
			if err := checkUnknownKeys(lower, ft.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func suggest(key string, fields map[string]reflect.Type) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "") }
	for name := range fields {
		if norm(name) == norm(key) {
			return fmt.Sprintf(" (did you mean %q?)", name)
		}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

// ErrInvalid marks a validation failure; the message names the key.
var ErrInvalid = errors.New("invalid configuration")
