//! What the agent last knew of the kernel's IPVS services in its scope. A read
//! fills it, every change the kernel accepted updates it, so that a config or
//! health change is planned against it without reading the kernel again. A
//! refused change leaves its service unknown until it is read again: the cache
//! never keeps believing what a failed write may not have done. Other people's
//! changes (drift) only a full read sees. Pure.

use std::collections::{BTreeSet, HashMap};

use super::model::{Destination, Op, ServiceKey};
use super::plan::{op_key, Scope, VirtualService};

/// The kernel's services as last read or written.
#[derive(Clone, Debug, Default)]
pub struct KernelCache {
    /// What was read: every kernel service in this scope...
    scope: Scope,
    /// ...and these services.
    keys: BTreeSet<ServiceKey>,
    /// The known services, in no order (plans take a slice).
    services: Vec<VirtualService>,
    /// Position of each known service in `services`.
    index: HashMap<ServiceKey, usize>,
    /// Covered services whose state is unknown: to be read again.
    unknown: BTreeSet<ServiceKey>,
}

impl KernelCache {
    /// Whether the kernel's state of `key` was read (it may be unknown since).
    pub fn covers(&self, key: &ServiceKey) -> bool {
        self.scope.contains(key) || self.keys.contains(key)
    }

    /// Whether every service in `scope` and every key of `keys` was read.
    pub fn covers_all<'k>(
        &self,
        scope: &Scope,
        mut keys: impl Iterator<Item = &'k ServiceKey>,
    ) -> bool {
        scope.addrs.is_subset(&self.scope.addrs)
            && scope.fwmarks.is_subset(&self.scope.fwmarks)
            && keys.all(|k| self.covers(k))
    }

    /// Records a read of every kernel service in `scope` and of `keys`: `read`
    /// holds those of them the kernel has that this cache did not cover yet.
    pub fn extend(
        &mut self,
        scope: &Scope,
        keys: impl IntoIterator<Item = ServiceKey>,
        read: Vec<VirtualService>,
    ) {
        for vs in read {
            self.put(vs);
        }
        self.scope = self.scope.union(scope);
        self.keys.extend(keys);
    }

    /// The known services (unknown ones left out).
    pub fn services(&self) -> &[VirtualService] {
        &self.services
    }

    /// The desired services and the known ones that [`plan`] would have to
    /// look at: those not identical on both sides, within `scope` or desired.
    /// Planning these gives the same ops as planning everything (an identical
    /// service needs none), at the cost of a hash lookup and a comparison per
    /// service, where a full plan indexes every service and destination: a
    /// no-op pass or one change stays cheap at 10,000 services. A duplicate
    /// desired key keeps the last one, as in [`plan`].
    ///
    /// [`plan`]: super::plan::plan
    pub fn differing(
        &self,
        desired: &[VirtualService],
        scope: &Scope,
    ) -> (Vec<VirtualService>, Vec<VirtualService>) {
        let want: HashMap<ServiceKey, &VirtualService> =
            desired.iter().map(|v| (v.service.key, v)).collect();
        let same = |v: &VirtualService| {
            self.index
                .get(&v.service.key)
                .is_some_and(|&i| identical(&self.services[i], v))
        };
        let want_differing = want
            .values()
            .filter(|v| !same(v))
            .map(|v| (*v).clone())
            .collect();
        let have_differing = self
            .services
            .iter()
            .filter(|h| match want.get(&h.service.key) {
                Some(w) => !identical(w, h),
                None => scope.contains(&h.service.key),
            })
            .cloned()
            .collect();
        (want_differing, have_differing)
    }

    /// Services to read again before planning against this cache.
    pub fn unknown(&self) -> impl Iterator<Item = &ServiceKey> {
        self.unknown.iter()
    }

    /// The kernel's state of `key` as just read (`None`: it has no such service).
    pub fn refresh(&mut self, key: ServiceKey, read: Option<VirtualService>) {
        self.unknown.remove(&key);
        match read {
            Some(vs) => self.put(vs),
            None => self.remove(&key),
        }
    }

    /// A change the kernel accepted.
    pub fn record(&mut self, op: &Op) {
        let key = op_key(op);
        if let Op::AddService(s) = op {
            self.put(VirtualService {
                service: s.clone(),
                destinations: Vec::new(),
            });
            return;
        }
        if let Op::DeleteService(k) = op {
            self.remove(k);
            return;
        }
        let Some(&i) = self.index.get(&key) else {
            // Accepted for a service this cache does not know: read it again.
            self.invalidate(key);
            return;
        };
        let vs = &mut self.services[i];
        match op {
            Op::EditService(s) => vs.service = s.clone(),
            Op::AddDestination(_, d) | Op::EditDestination(_, d) => {
                match vs.destinations.iter_mut().find(|h| h.addr == d.addr) {
                    Some(h) => *h = *d,
                    None => vs.destinations.push(*d),
                }
            }
            Op::DeleteDestination(_, a) => vs.destinations.retain(|h| h.addr != *a),
            Op::AddService(_) | Op::DeleteService(_) => unreachable!("handled above"),
        }
    }

    /// A change that failed, or whose outcome is not known: the kernel's state
    /// of its service is unknown until read again.
    pub fn invalidate(&mut self, key: ServiceKey) {
        self.remove(&key);
        self.unknown.insert(key);
    }

    fn put(&mut self, vs: VirtualService) {
        match self.index.get(&vs.service.key) {
            Some(&i) => self.services[i] = vs,
            None => {
                self.index.insert(vs.service.key, self.services.len());
                self.services.push(vs);
            }
        }
    }

    fn remove(&mut self, key: &ServiceKey) {
        if let Some(i) = self.index.remove(key) {
            self.services.swap_remove(i);
            if let Some(moved) = self.services.get(i) {
                self.index.insert(moved.service.key, i);
            }
        }
    }
}

/// The same service with the same destinations, in any order (the kernel
/// lists them in its own).
fn identical(a: &VirtualService, b: &VirtualService) -> bool {
    fn by_addr(v: &VirtualService) -> Vec<&Destination> {
        let mut d: Vec<_> = v.destinations.iter().collect();
        d.sort_unstable_by_key(|d| d.addr);
        d
    }
    a.service == b.service
        && a.destinations.len() == b.destinations.len()
        && (a.destinations == b.destinations || by_addr(a) == by_addr(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::plan::plan;
    use crate::ipvs::plan::tests::{apply, arb_scope, arb_state, state_of, table_of, Table};
    use proptest::prelude::*;

    fn sorted(mut v: Vec<VirtualService>) -> Vec<VirtualService> {
        v.sort_by_key(|s| s.service.key);
        for s in &mut v {
            s.destinations.sort_by_key(|d| d.addr);
        }
        v
    }

    fn read_all(table: &Table) -> KernelCache {
        let mut cache = KernelCache::default();
        let keys: Vec<_> = table.keys().copied().collect();
        cache.extend(&Scope::default(), keys, state_of(table));
        cache
    }

    /// Reads the unknown services again from the in-memory kernel.
    fn refresh_unknown(cache: &mut KernelCache, table: &Table) {
        let unknown: Vec<ServiceKey> = cache.unknown().copied().collect();
        for key in unknown {
            let read = state_of(table).into_iter().find(|v| v.service.key == key);
            cache.refresh(key, read);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Ops applied to the in-memory kernel (some refused: the plan is for
        /// another state) and to the cache as the reconciler does (accepted:
        /// recorded; refused: invalidated): after reading the unknown services
        /// again, the cache is what a fresh read shows.
        #[test]
        fn recorded_ops_match_a_fresh_read(
            kernel in arb_state(true), planned_for in arb_state(true),
            desired in arb_state(false), scope in arb_scope(),
        ) {
            let mut table = table_of(&kernel);
            let mut cache = read_all(&table);
            for op in plan(&desired, &planned_for, &scope) {
                match apply(&mut table, &op) {
                    Ok(()) => cache.record(&op),
                    Err(_) => cache.invalidate(op_key(&op)),
                }
            }
            let known: BTreeSet<_> = cache.services().iter().map(|v| v.service.key).collect();
            let fresh: Vec<_> = state_of(&table)
                .into_iter()
                .filter(|v| known.contains(&v.service.key))
                .collect();
            prop_assert_eq!(sorted(cache.services().to_vec()), fresh);
            refresh_unknown(&mut cache, &table);
            prop_assert_eq!(cache.unknown().count(), 0);
            prop_assert_eq!(sorted(cache.services().to_vec()), state_of(&table));
        }

        /// With every op accepted, planning again against the cache alone finds
        /// nothing to do: a no-op pass needs no read.
        #[test]
        fn after_a_clean_pass_the_cache_plans_nothing(
            kernel in arb_state(true), desired in arb_state(false), scope in arb_scope(),
        ) {
            let mut table = table_of(&kernel);
            let mut cache = read_all(&table);
            for op in plan(&desired, cache.services(), &scope) {
                apply(&mut table, &op).map_err(TestCaseError::fail)?;
                cache.record(&op);
            }
            prop_assert_eq!(plan(&desired, cache.services(), &scope), vec![]);
            prop_assert_eq!(sorted(cache.services().to_vec()), state_of(&table));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn planning_the_differing_services_is_planning_everything(
            kernel in arb_state(true), desired in arb_state(false), scope in arb_scope(),
            unchanged in proptest::collection::vec(any::<bool>(), 6),
        ) {
            // Some desired services identical to the kernel's, as after a pass.
            let desired: Vec<VirtualService> = desired
                .into_iter()
                .zip(&unchanged)
                .map(|(d, &same)| match kernel.iter().find(|k| k.service.key == d.service.key) {
                    Some(k) if same => k.clone(),
                    _ => d,
                })
                .collect();
            let cache = read_all(&table_of(&kernel));
            let (want, have) = cache.differing(&desired, &scope);
            prop_assert_eq!(
                plan(&want, &have, &scope),
                plan(&desired, cache.services(), &scope)
            );
        }
    }

    #[test]
    fn coverage_grows_with_reads() {
        let key: ServiceKey = ServiceKey::Fwmark {
            family: crate::ipvs::model::Family::V4,
            mark: 1,
        };
        let mut cache = KernelCache::default();
        assert!(!cache.covers(&key));
        assert!(cache.covers_all(&Scope::default(), std::iter::empty()));
        let scope = Scope {
            addrs: BTreeSet::new(),
            fwmarks: [(crate::ipvs::model::Family::V4, 1)].into(),
        };
        assert!(!cache.covers_all(&scope, std::iter::empty()));
        cache.extend(&scope, [], Vec::new());
        assert!(cache.covers(&key));
        assert!(cache.covers_all(&scope, [key].iter()));
    }
}
