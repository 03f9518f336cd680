package cuda

// ring hands out regions of a buffer of size bytes in the order they are
// taken, as a ring: each region stays in use until the device has finished
// the transfer that reads it, which the caller learns through the tag it
// gives push (the driver: an event recorded after the transfer). take waits
// only for the oldest regions that overlap the new one, so a copy through
// the ring blocks the host only when the transfers still queued hold more
// than the whole ring.
type ring struct {
	size int64
	head int64    // where the next region starts, unless it must wrap
	live []region // regions in use, oldest first
}

// region is [start, end) of a ring, in use until the transfer tagged tag
// has finished.
type region struct {
	start, end int64
	tag        int
}

// take returns the start of n bytes (0 < n ≤ size): at head, or at 0 when
// they would pass the end. Each region in use that overlaps them is retired
// first, oldest first, through done, which returns when the transfer of
// that tag has finished; the caller may then reuse the tag. An error of
// done stops take and is returned; the region stays in use.
func (r *ring) take(n int64, done func(tag int) error) (int64, error) {
	start := r.head
	if start+n > r.size {
		start = 0
	}
	for r.overlaps(start, start+n) {
		if err := done(r.live[0].tag); err != nil {
			return 0, err
		}
		r.live[0] = region{}
		r.live = r.live[1:]
	}
	return start, nil
}

// overlaps reports whether a region in use overlaps [start, end).
func (r *ring) overlaps(start, end int64) bool {
	for _, l := range r.live {
		if l.start < end && start < l.end {
			return true
		}
	}
	return false
}

// push marks [start, start+n), from take, in use until the transfer tagged
// tag has finished.
func (r *ring) push(start, n int64, tag int) {
	r.live = append(r.live, region{start, start + n, tag})
	r.head = start + n
}
