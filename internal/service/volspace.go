package service

// Volume capacity for the volume list: statfs of each attached volume's
// backing file system (volume.Statfs), read at every call (it is one
// fstatfs, and a list call is rare).

import (
	"github.com/vfolder/vfolder/api"
)

// volumeSpace returns the capacity figures of an attached volume; when
// statfs fails the figures are zero and SpaceError says why.
func (s *Service) volumeSpace(a *attached) *api.VolumeSpace {
	sp, err := a.vol.Statfs()
	if err != nil {
		s.log.Warn().Err(err).Str("volume", a.rec.Name).Msg("cannot read the volume's capacity")
		return &api.VolumeSpace{SpaceError: err.Error()}
	}
	return &api.VolumeSpace{
		CapacityBytes: sp.CapacityBytes, UsedBytes: sp.UsedBytes, FreeBytes: sp.FreeBytes,
		CapacityInodes: sp.CapacityInodes, UsedInodes: sp.UsedInodes, FreeInodes: sp.FreeInodes,
	}
}
