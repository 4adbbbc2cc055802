package meta_test

import (
	"testing"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/metatest"
)

func TestMemoryStore(t *testing.T) {
	metatest.RunStoreSuite(t, func(t *testing.T) meta.Store { return meta.NewMemory() })
}
