//! The consent rules of `Access`: who invites, who answers, who caps a
//! member's budget, who sees and revokes which keys.

use super::*;
use crate::identity::guest::Guest;
use crate::identity::key_ring::KeyGrant;
use crate::store::OrgRole;

const ORG: &str = "org-a";
const OTHER_ORG: &str = "org-b";

/// `owner` owns ORG, `boss` is its admin, `member` a member; `outsider`
/// owns OTHER_ORG; `loner` belongs to nothing.
fn directory() -> Directory {
    let d = Directory::default();
    d.set("owner", ORG, OrgRole::Owner);
    d.set("boss", ORG, OrgRole::Admin);
    d.set("member", ORG, OrgRole::Member);
    d.set("outsider", OTHER_ORG, OrgRole::Owner);
    d
}

fn user(id: &str) -> Principal {
    Principal::User { user_id: Arc::from(id) }
}

fn key(scopes: &[Scope], org: Option<&str>, user: Option<&str>) -> Principal {
    let scopes: Scopes = scopes.iter().copied().collect();
    Principal::Key(Arc::new(KeyGrant::new("key_1", scopes, org, user, None)))
}

fn guest() -> Principal {
    Principal::Guest(Guest {
        ip: EntityKey::ip(std::net::IpAddr::from([192, 0, 2, 1])),
        fingerprint: None,
    })
}

#[test]
fn only_platform_admins_add_members_directly() {
    let d = directory();
    let add = |p: &Principal| Access::new(p, &d).may_add_member(ORG);
    assert_eq!(add(&Principal::Admin), Ok(Admission::Direct));
    assert_eq!(add(&user("owner")), Ok(Admission::Invite));
    assert_eq!(add(&user("boss")), Ok(Admission::Invite));
    assert_eq!(add(&key(&[Scope::OrgAdmin], Some(ORG), None)), Ok(Admission::Invite));
    assert!(matches!(add(&user("member")), Err(Denied::Forbidden(_))));
    assert_eq!(add(&user("outsider")), Err(Denied::Hidden));
    assert_eq!(
        add(&key(&[Scope::OrgAdmin], Some(OTHER_ORG), None)),
        Err(Denied::Hidden)
    );
    assert_eq!(add(&guest()), Err(Denied::Unauthenticated));
}

#[test]
fn only_the_user_themselves_answers_invitations() {
    let d = directory();
    let invitee = |p: &Principal| Access::new(p, &d).invitee().map(|u| u.to_string());
    assert_eq!(invitee(&user("loner")), Ok("loner".to_string()));
    assert_eq!(
        invitee(&key(&[Scope::Check], None, Some("loner"))),
        Ok("loner".to_string())
    );
    // A key an organisation holds for its member cannot consent for them,
    // nor can admins or service keys: they are nobody's invitee.
    assert_eq!(
        invitee(&key(&[Scope::Check], Some(ORG), Some("member"))),
        Err(Denied::Hidden)
    );
    assert_eq!(invitee(&key(&[Scope::Service], None, None)), Err(Denied::Hidden));
    assert_eq!(invitee(&key(&[Scope::OrgAdmin], Some(ORG), None)), Err(Denied::Hidden));
    assert_eq!(invitee(&Principal::Admin), Err(Denied::Hidden));
    assert_eq!(invitee(&guest()), Err(Denied::Unauthenticated));
}

#[test]
fn org_managers_set_member_caps_admins_set_own_budgets() {
    let d = directory();
    let budget = |p: &Principal, u: &str| Access::new(p, &d).may_manage_user_budget(u);
    assert_eq!(budget(&Principal::Admin, "loner"), Ok(BudgetAuthority::Own));
    assert_eq!(budget(&Principal::Admin, "member"), Ok(BudgetAuthority::Own));
    let cap = Ok(BudgetAuthority::MemberCap { org_id: Arc::from(ORG) });
    assert_eq!(budget(&user("owner"), "member"), cap);
    assert_eq!(budget(&key(&[Scope::OrgAdmin], Some(ORG), None), "member"), cap);
    // Not a member (perhaps only invited), or another tenant's: hidden.
    assert_eq!(budget(&user("owner"), "loner"), Err(Denied::Hidden));
    assert_eq!(budget(&user("owner"), "outsider"), Err(Denied::Hidden));
    assert!(matches!(budget(&user("member"), "boss"), Err(Denied::Forbidden(_))));
    assert!(matches!(budget(&user("member"), "member"), Err(Denied::Forbidden(_))));
    assert_eq!(budget(&guest(), "member"), Err(Denied::Unauthenticated));
}

#[test]
fn a_user_may_read_and_revoke_every_key_that_acts_as_them() {
    let d = directory();
    let manage =
        |p: &Principal, org: Option<&str>, u: Option<&str>, a: KeyAction| Access::new(p, &d).may_manage_key(org, u, a);
    let member = user("member");
    // The organisation's key bound to them: read and revoke, not rotate
    // (that would hand them the organisation's secret).
    assert_eq!(manage(&member, Some(ORG), Some("member"), KeyAction::Read), Ok(()));
    assert_eq!(manage(&member, Some(ORG), Some("member"), KeyAction::Revoke), Ok(()));
    assert_eq!(
        manage(&member, Some(ORG), Some("member"), KeyAction::Rotate),
        Err(Denied::Hidden)
    );
    // Their personal keys: everything.
    assert_eq!(manage(&member, None, Some("member"), KeyAction::Rotate), Ok(()));
    let personal = key(&[Scope::Check], None, Some("member"));
    assert_eq!(manage(&personal, Some(ORG), Some("member"), KeyAction::Revoke), Ok(()));
    // Someone else's keys, or the org's other keys: hidden.
    assert_eq!(
        manage(&member, Some(ORG), Some("boss"), KeyAction::Read),
        Err(Denied::Hidden)
    );
    assert_eq!(manage(&member, Some(ORG), None, KeyAction::Revoke), Err(Denied::Hidden));
    assert_eq!(
        manage(&member, None, Some("loner"), KeyAction::Revoke),
        Err(Denied::Hidden)
    );
    // A key the org holds for the member does not speak for the member.
    let bound = key(&[Scope::Check], Some(ORG), Some("member"));
    assert_eq!(
        manage(&bound, Some(ORG), Some("member"), KeyAction::Revoke),
        Err(Denied::Hidden)
    );
    // The organisation's managers keep managing its keys.
    assert_eq!(
        manage(&user("owner"), Some(ORG), Some("member"), KeyAction::Rotate),
        Ok(())
    );
    assert_eq!(
        manage(&user("outsider"), Some(ORG), Some("member"), KeyAction::Read),
        Err(Denied::Hidden)
    );
    assert_eq!(
        manage(&guest(), Some(ORG), None, KeyAction::Read),
        Err(Denied::Unauthenticated)
    );
}

#[test]
fn key_listings_stay_within_reach() {
    let d = directory();
    let listing = |p: &Principal| Access::new(p, &d).key_listing();
    assert_eq!(listing(&Principal::Admin), Ok(KeyListing::All));
    assert_eq!(
        listing(&user("owner")),
        Ok(KeyListing::Reach {
            org_id: Some(ORG.to_string()),
            user_id: Some("owner".to_string()),
        })
    );
    assert_eq!(
        listing(&user("member")),
        Ok(KeyListing::Reach {
            org_id: None,
            user_id: Some("member".to_string()),
        })
    );
    assert_eq!(
        listing(&key(&[Scope::OrgAdmin], Some(ORG), None)),
        Ok(KeyListing::Reach {
            org_id: Some(ORG.to_string()),
            user_id: None,
        })
    );
    assert!(matches!(
        listing(&key(&[Scope::Service], Some(ORG), None)),
        Err(Denied::Forbidden(_))
    ));
    assert!(matches!(
        listing(&key(&[Scope::Check], Some(ORG), Some("member"))),
        Err(Denied::Forbidden(_))
    ));
    assert_eq!(listing(&guest()), Err(Denied::Unauthenticated));
}
