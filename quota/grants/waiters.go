package grants

import "time"

// Operations waiting for room (quota.Grants.Room).

// endWaiters answers the operations waiting for room: those the node's
// room now covers, those that can get no more (the scope is full), and
// those whose wait is over (all of them when the worker stops).
func (w *worker) endWaiters(all bool) {
	m := w.c.manager()
	if m == nil {
		return
	}
	v, known, ub, un := m.View(w.s)
	pending := m.PendingHolds(w.s)
	now := time.Now()
	rec := w.rec
	me := w.c.cfg.Node
	frozen := w.c.frozen.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := w.waiters[:0]
	for _, wt := range w.waiters {
		if wt.over {
			continue
		}
		end := all
		if !end && known && !frozen {
			roomB, roomN := v.Grant-ub, v.GrantInodes-un
			okB := v.Limit <= 0 || roomB >= wt.need.Bytes
			okN := v.LimitInodes <= 0 || roomN >= wt.need.Inodes
			okH := !wt.need.Hold || !pending
			end = okB && okN && okH
			wt.met = end
			if !end && !okB && okN && okH && !wt.need.Exact && wt.asked && roomB > 0 && rec != nil {
				// A write takes what the node holds once it asked and the
				// pool cannot give the rest: it is cut short there.
				if pb, _ := rec.pool(); roomB+max(pb, 0) < wt.need.Bytes {
					end = true
				}
			}
			if !end && okH && rec != nil && !w.stale {
				pb, pn := rec.pool()
				ob, on := rec.othersGrant(me)
				if !okB {
					if wt.need.Exact {
						end = roomB+max(pb, 0)+ob < wt.need.Bytes
					} else {
						end = pb <= 0 && ob == 0
					}
				}
				if !okN {
					end = end || roomN+max(pn, 0)+on < wt.need.Inodes
				}
			}
		}
		if !end && now.After(wt.deadline) {
			end = true
			w.logWait(wt, frozen)
		}
		if end && !now.After(wt.deadline) {
			w.protect = now.Add(100 * time.Millisecond)
			w.demand.Store(now.UnixNano())
		}
		if end {
			if e := w.c.log.Debug(); e.Enabled() {
				var pb, ob int64
				if rec != nil {
					pb, _ = rec.pool()
					ob, _ = rec.othersGrant(me)
				}
				e.Str("scope", w.s.String()).Int64("need", wt.need.Bytes).Bool("exact", wt.need.Exact).Int64("grant", v.Grant).
					Int64("unsettled", ub).Int64("pool", pb).Int64("others", ob).Bool("late", now.After(wt.deadline)).Msg("grants: room wait over")
			}
			wt.over = true
			close(wt.done)
			continue
		}
		keep = append(keep, wt)
	}
	clear(w.waiters[len(keep):])
	w.waiters = keep
}

func (w *worker) logWait(wt *waiter, frozen bool) {
	now := time.Now()
	if now.Sub(w.loggedWait) < time.Second {
		return
	}
	w.loggedWait = now
	ev := w.c.log.Warn().Str("scope", w.s.String()).Int64("bytes", wt.need.Bytes).Dur("waited", w.c.cfg.Wait)
	if from, err := w.c.outage(); !from.IsZero() {
		ev.Err(err).Time("outage_since", from).Msg("quota: growth refused (EDQUOT) after waiting: cluster store unreachable")
		return
	}
	if frozen {
		ev.Msg("quota: growth refused (EDQUOT) after waiting: the node's lease is not confirmed")
		return
	}
	ev.Msg("quota: growth refused (EDQUOT) after waiting for room other nodes hold")
}
