package grants

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The lease. A node may grow a scope beyond what it settled only while
// its lease is surely alive: from the moment it sent a keepalive that
// succeeded, for the lease's TTL less a margin. Past that, it freezes its
// grants (quota.Manager.FreezeGrants): a survivor may take them over once
// the store expires the lease, and the node must not spend them then. So
// an outage shorter than the TTL less the margin does not stop writes
// inside grants; a longer one stops growth until the lease is confirmed,
// or renewed after a rejoin.

func (c *Client) margin() time.Duration {
	return c.cfg.LeaseTTL/5 + 200*time.Millisecond
}

// joinLease grants a lease and puts the node's record under it. A record
// left by an earlier run is taken over (its lease revoked).
func (c *Client) joinLease(ctx context.Context) error {
	ttl := int64(c.cfg.LeaseTTL / time.Second)
	t0 := time.Now()
	cctx, cancel := c.callCtx(ctx)
	lg, err := c.cli.Grant(cctx, ttl)
	cancel()
	c.noteCall(err)
	if err != nil {
		return fmt.Errorf("grants: grant lease: %w", c.wrap(err))
	}
	key := c.k.node(c.cfg.Node)
	old, err := c.get(ctx, key)
	if err != nil {
		return err
	}
	val := encode(nodeRec{Host: c.cfg.Host, Lease: int64(lg.ID), Start: time.Now().UnixMilli()})
	cctx, cancel = c.callCtx(ctx)
	_, err = c.cli.Put(cctx, key, val, clientv3.WithLease(lg.ID))
	cancel()
	c.noteCall(err)
	if err != nil {
		return fmt.Errorf("grants: register node: %w", c.wrap(err))
	}
	if len(old.Kvs) == 1 {
		if nr, err := decode[nodeRec](old.Kvs[0].Value); err == nil && nr.Lease != 0 && nr.Lease != int64(lg.ID) {
			cctx, cancel := c.callCtx(ctx)
			c.cli.Revoke(cctx, clientv3.LeaseID(nr.Lease))
			cancel()
		}
	}
	c.lease.Store(int64(lg.ID))
	c.log.Debug().Int64("lease", int64(lg.ID)).Msg("grants: node registered under a lease")
	c.validUntil.Store(t0.Add(time.Duration(lg.TTL)*time.Second - c.margin()).UnixNano())
	return nil
}

func (c *Client) leaseLoop() {
	defer c.wg.Done()
	every := c.cfg.LeaseTTL / 4
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	next := time.Now()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		case <-c.leaseNow:
			next = time.Now()
		}
		now := time.Now()
		if now.UnixNano() > c.validUntil.Load() && !c.frozen.Load() {
			c.freeze(true)
			c.log.Warn().Msg("grants: lease not confirmed in time; growth beyond settled usage stops until it is")
		}
		if now.Before(next) {
			continue
		}
		t0 := now
		cctx, cancel := c.callCtx(c.ctx)
		resp, err := c.cli.KeepAliveOnce(cctx, clientv3.LeaseID(c.lease.Load()))
		cancel()
		c.noteCall(err)
		switch {
		case err == nil:
			c.validUntil.Store(t0.Add(time.Duration(resp.TTL)*time.Second - c.margin()).UnixNano())
			if c.frozen.Load() && !c.rejoining.Load() {
				c.freeze(false)
			}
			next = time.Now().Add(every)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			c.freeze(true)
			c.log.Warn().Msg("grants: lease expired; rejoining (survivors may have settled this node's holds)")
			if err := c.rejoin(); err != nil {
				c.log.Warn().Err(err).Msg("grants: rejoin failed; retrying")
				next = time.Now().Add(200 * time.Millisecond)
				continue
			}
			next = time.Now().Add(every)
		default:
			next = time.Now().Add(200 * time.Millisecond)
		}
	}
}

// lostLease freezes grants at once and makes the lease loop look at the
// lease now: the node's key vanished, or its share was taken over.
func (c *Client) lostLease() {
	if !c.frozen.Load() {
		c.freeze(true)
		c.log.Warn().Msg("grants: this node's key or share is gone; growth stops until the lease is renewed")
	}
	select {
	case c.leaseNow <- struct{}{}:
	default:
	}
}

func (c *Client) freeze(on bool) {
	c.frozen.Store(on)
	if m := c.manager(); m != nil {
		m.FreezeGrants(on)
	}
	if !on {
		c.kickAll()
	}
}

func (c *Client) kickAll() {
	c.mu.Lock()
	ws := make([]*worker, 0, len(c.workers))
	for _, w := range c.workers {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		w.poke()
	}
}

// rejoin takes a new lease after the old one expired, and makes every
// worker reload its scope: a survivor may have settled this node's holds
// and taken its shares meanwhile (see takeover.go).
func (c *Client) rejoin() error {
	c.rejoining.Store(true)
	defer c.rejoining.Store(false)
	if err := c.joinLease(c.ctx); err != nil {
		return err
	}
	c.mu.Lock()
	ws := make([]*worker, 0, len(c.workers))
	for _, w := range c.workers {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		// Nothing of the old grants may be spent until the worker has read
		// its share again (a survivor may have taken it).
		c.manager().Withhold(w.s, math.MaxInt64, math.MaxInt64)
		w.reloadAfterRejoin()
	}
	// The workers reload before they next send anything; growth resumes
	// once each has its share again.
	c.freeze(false)
	return nil
}
