// Package grants is the cluster side of quotas: one exact quota per scope
// across nodes, on etcd. (Design notes follow in the full comment.)
package grants
