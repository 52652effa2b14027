//! Which tier a user's own limits follow.
//!
//! A member of an organisation is on the organisation's plan: their user
//! entity takes the organisation's tier (so a `pro` organisation's members
//! each get `pro` limits), and the organisation's entity pools every
//! member's messages and spend against the same tier and its budget. A
//! user's own `subscription_tier` applies again when they leave.

use crate::entity::EntityKey;
use crate::identity::Directory;
use crate::limits::tier::DEFAULT_TIER;
use crate::router::{EntityRouter, RouteError};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// The tier `user_id`'s own limits follow now.
pub async fn effective_user_tier(store: &Store, directory: &Directory, user_id: &str) -> Result<String, StoreError> {
    if let Some(org) = directory.org_of(user_id)
        && let Some(tier) = store.org_tier(&org).await?
    {
        return Ok(tier);
    }
    Ok(store
        .user_tier(user_id)
        .await?
        .unwrap_or_else(|| DEFAULT_TIER.to_string()))
}

/// Tells a resident user entity which tier it follows after a change of
/// membership or of its organisation's tier.
pub async fn refresh_user_tier(
    router: &EntityRouter,
    store: &Store,
    directory: &Directory,
    user_id: &str,
) -> Result<(), TenancyError> {
    let Ok(key) = EntityKey::user(user_id) else {
        return Ok(());
    };
    let tier = effective_user_tier(store, directory, user_id).await?;
    router.set_tier(&key, &tier).await?;
    Ok(())
}
