//! A spin lock that remembers which CPU holds it. The fault path (a command that faulted or
//! panicked while holding the heap or the frame allocator) must release what the faulting CPU
//! held, and only that: another CPU holding the same lock at that moment is still inside its
//! critical section.
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use super::percpu;

pub struct CpuLock<T> {
    lock: spin::Mutex<T>,
    /// The holder's CPU index + 1; 0 when free.
    holder: AtomicU32,
}

pub struct CpuLockGuard<'a, T> {
    guard: spin::MutexGuard<'a, T>,
    holder: &'a AtomicU32,
}

impl<T> CpuLock<T> {
    pub const fn new(v: T) -> Self {
        CpuLock {
            lock: spin::Mutex::new(v),
            holder: AtomicU32::new(0),
        }
    }

    pub fn lock(&self) -> CpuLockGuard<'_, T> {
        let guard = self.lock.lock();
        self.holder
            .store(percpu::this().index + 1, Ordering::Relaxed);
        CpuLockGuard {
            guard,
            holder: &self.holder,
        }
    }

    /// After a fault on this CPU: releases the lock if this CPU holds it.
    pub fn release_if_held_here(&self) {
        let me = percpu::this().index + 1;
        if self.lock.is_locked() && self.holder.load(Ordering::Relaxed) == me {
            self.holder.store(0, Ordering::Relaxed);
            // SAFETY: this CPU holds the lock and the code that took it was abandoned by the
            // fault guard: its critical section will never resume.
            unsafe { self.lock.force_unlock() };
        }
    }
}

impl<T> Deref for CpuLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for CpuLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for CpuLockGuard<'_, T> {
    fn drop(&mut self) {
        // Cleared before the inner guard unlocks (fields drop after this).
        self.holder.store(0, Ordering::Relaxed);
    }
}
