package config

import "testing"

func TestTokenKeyFile(t *testing.T) {
	c, err := Parse("token_key_file = \"/etc/vfolder/token.key\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenKeyFile != "/etc/vfolder/token.key" {
		t.Errorf("TokenKeyFile = %q", c.TokenKeyFile)
	}
	c, err = Parse("")
	if err != nil || c.TokenKeyFile != "" {
		t.Errorf("default TokenKeyFile = %q, %v; want empty (the daemon uses <state_dir>/token.key)", c.TokenKeyFile, err)
	}
}
