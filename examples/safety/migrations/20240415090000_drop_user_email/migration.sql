-- fast-note-migrate: phase=contract
-- Release N+1, contract step of the rename User.email -> User.emailAddress. The
-- post-upgrade run applies it once no pod of release N (which still read "email") is left.

-- fast-note-migrate: allow adding-not-nullable-field (the validated check User_emailAddress_not_null makes this a catalog-only change, PostgreSQL 12+)
ALTER TABLE "User" ALTER COLUMN "emailAddress" SET NOT NULL;
ALTER TABLE "User" DROP CONSTRAINT "User_emailAddress_not_null";

DROP TRIGGER "User_sync_email" ON "User";
DROP FUNCTION "User_sync_email"();
-- fast-note-migrate: allow ban-drop-column (contract step of the email rename: release N+1 no longer uses it)
ALTER TABLE "User" DROP COLUMN "email";
