ALTER TABLE "User" ADD COLUMN "email" TEXT;
UPDATE "User" SET "email" = "emailAddress";
ALTER TABLE "User" ALTER COLUMN "email" SET NOT NULL;
CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
ALTER TABLE "User" ADD CONSTRAINT "User_emailAddress_not_null" CHECK ("emailAddress" IS NOT NULL);
ALTER TABLE "User" ALTER COLUMN "emailAddress" DROP NOT NULL;
CREATE FUNCTION "User_sync_email"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW."emailAddress" IS NULL THEN
        NEW."emailAddress" := NEW."email";
    ELSIF NEW."email" IS NULL OR NEW."email" IS DISTINCT FROM NEW."emailAddress" THEN
        NEW."email" := NEW."emailAddress";
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER "User_sync_email" BEFORE INSERT OR UPDATE ON "User"
    FOR EACH ROW EXECUTE FUNCTION "User_sync_email"();
