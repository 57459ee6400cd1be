package config

func (c *Config) validateKeyspaces() error { return nil }
